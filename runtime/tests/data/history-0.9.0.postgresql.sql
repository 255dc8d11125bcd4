--
-- PostgreSQL database dump
--

\restrict zlDK8XJZSEg628XVhoe6W495W3RAXHuPQjfjSQ0cnzsuZEiXReWzfCZgtbbl5MO

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: ai; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA ai;


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: agno_runs; Type: TABLE; Schema: ai; Owner: -
--

CREATE TABLE ai.agno_runs (
    run_id character varying NOT NULL,
    session_id character varying NOT NULL,
    run_type character varying NOT NULL,
    agent_id character varying,
    team_id character varying,
    workflow_id character varying,
    user_id character varying,
    parent_run_id character varying,
    status character varying,
    run_index bigint,
    run_data jsonb NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint
);


--
-- Name: agno_schema_versions; Type: TABLE; Schema: ai; Owner: -
--

CREATE TABLE ai.agno_schema_versions (
    table_name character varying NOT NULL,
    version character varying NOT NULL,
    created_at character varying NOT NULL,
    updated_at character varying
);


--
-- Name: agno_sessions; Type: TABLE; Schema: ai; Owner: -
--

CREATE TABLE ai.agno_sessions (
    session_id character varying NOT NULL,
    session_type character varying NOT NULL,
    agent_id character varying,
    team_id character varying,
    workflow_id character varying,
    user_id character varying,
    session_data jsonb,
    agent_data jsonb,
    team_data jsonb,
    workflow_data jsonb,
    metadata jsonb,
    summary jsonb,
    created_at bigint NOT NULL,
    updated_at bigint
);


--
-- Name: parallel_workflow_cursors; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.parallel_workflow_cursors (
    workflow_id character varying(200) NOT NULL,
    source_id character varying(200) NOT NULL,
    state text,
    run_id character varying(100),
    updated_at double precision,
    claimed_by character varying(100),
    claimed_until double precision
);


--
-- Name: parallel_workflow_ticks; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.parallel_workflow_ticks (
    schedule character varying(300) NOT NULL,
    at double precision NOT NULL,
    state character varying(20) NOT NULL,
    reason text,
    run_id character varying(100),
    replica character varying(200),
    decided_at double precision,
    heartbeat_at double precision,
    ended_at double precision,
    manual boolean NOT NULL
);


--
-- Data for Name: agno_runs; Type: TABLE DATA; Schema: ai; Owner: -
--



--
-- Data for Name: agno_schema_versions; Type: TABLE DATA; Schema: ai; Owner: -
--

INSERT INTO ai.agno_schema_versions VALUES ('agno_sessions', '3.0.0', '2026-12-07T15:30:12.597104', '2026-12-07T15:30:12.597104');
INSERT INTO ai.agno_schema_versions VALUES ('agno_runs', '3.0.0', '2026-12-07T15:30:12.690046', '2026-12-07T15:30:12.690046');


--
-- Data for Name: agno_sessions; Type: TABLE DATA; Schema: ai; Owner: -
--



--
-- Data for Name: parallel_workflow_cursors; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.parallel_workflow_cursors VALUES ('connectors', 'events', '{"field": "updated_at", "value": "2026-11-30T10:00:00", "seen": [7, 8]}', 'run-of-events', 1796657412.7383206, NULL, NULL);
INSERT INTO public.parallel_workflow_cursors VALUES ('connectors', 'orders', '{"field": "id", "value": 40, "seen": [40], "target": "sample orders.sqlite"}', 'run-of-orders', 1796657412.7628124, NULL, NULL);
INSERT INTO public.parallel_workflow_cursors VALUES ('connectors', 'users', NULL, NULL, NULL, 'run-that-holds-users', 1796657472.799493);


--
-- Data for Name: parallel_workflow_ticks; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.parallel_workflow_ticks VALUES ('connectors/nightly', 1796115600, 'ok', NULL, 'run-of-nine', 'host:1:abc', 1796115600, 1796115600, NULL, false);
INSERT INTO public.parallel_workflow_ticks VALUES ('connectors/nightly', 1796115900, 'skipped', 'overlap: still running', NULL, 'host:1:abc', 1796115900, 1796115900, NULL, false);
INSERT INTO public.parallel_workflow_ticks VALUES ('connectors/nightly', 1796116200, 'queued', NULL, NULL, 'host:1:abc', 1796116200, 1796116200, NULL, false);
INSERT INTO public.parallel_workflow_ticks VALUES ('connectors/nightly', 1796116350, 'running', NULL, NULL, 'host:1:abc', 1796116350, 1796116350, NULL, true);


--
-- Name: agno_runs agno_runs_pkey; Type: CONSTRAINT; Schema: ai; Owner: -
--

ALTER TABLE ONLY ai.agno_runs
    ADD CONSTRAINT agno_runs_pkey PRIMARY KEY (run_id);


--
-- Name: agno_schema_versions agno_schema_versions_pkey; Type: CONSTRAINT; Schema: ai; Owner: -
--

ALTER TABLE ONLY ai.agno_schema_versions
    ADD CONSTRAINT agno_schema_versions_pkey PRIMARY KEY (table_name);


--
-- Name: agno_sessions agno_sessions_pkey; Type: CONSTRAINT; Schema: ai; Owner: -
--

ALTER TABLE ONLY ai.agno_sessions
    ADD CONSTRAINT agno_sessions_pkey PRIMARY KEY (session_id);


--
-- Name: parallel_workflow_cursors parallel_workflow_cursors_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.parallel_workflow_cursors
    ADD CONSTRAINT parallel_workflow_cursors_pkey PRIMARY KEY (workflow_id, source_id);


--
-- Name: parallel_workflow_ticks parallel_workflow_ticks_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.parallel_workflow_ticks
    ADD CONSTRAINT parallel_workflow_ticks_pkey PRIMARY KEY (schedule, at);


--
-- Name: idx_agno_runs_agent_id; Type: INDEX; Schema: ai; Owner: -
--

CREATE INDEX idx_agno_runs_agent_id ON ai.agno_runs USING btree (agent_id);


--
-- Name: idx_agno_runs_created_at; Type: INDEX; Schema: ai; Owner: -
--

CREATE INDEX idx_agno_runs_created_at ON ai.agno_runs USING btree (created_at);


--
-- Name: idx_agno_runs_run_type; Type: INDEX; Schema: ai; Owner: -
--

CREATE INDEX idx_agno_runs_run_type ON ai.agno_runs USING btree (run_type);


--
-- Name: idx_agno_runs_session_id; Type: INDEX; Schema: ai; Owner: -
--

CREATE INDEX idx_agno_runs_session_id ON ai.agno_runs USING btree (session_id);


--
-- Name: idx_agno_runs_session_id_run_index; Type: INDEX; Schema: ai; Owner: -
--

CREATE INDEX idx_agno_runs_session_id_run_index ON ai.agno_runs USING btree (session_id, run_index);


--
-- Name: idx_agno_runs_status; Type: INDEX; Schema: ai; Owner: -
--

CREATE INDEX idx_agno_runs_status ON ai.agno_runs USING btree (status);


--
-- Name: idx_agno_runs_team_id; Type: INDEX; Schema: ai; Owner: -
--

CREATE INDEX idx_agno_runs_team_id ON ai.agno_runs USING btree (team_id);


--
-- Name: idx_agno_runs_user_id; Type: INDEX; Schema: ai; Owner: -
--

CREATE INDEX idx_agno_runs_user_id ON ai.agno_runs USING btree (user_id);


--
-- Name: idx_agno_runs_workflow_id; Type: INDEX; Schema: ai; Owner: -
--

CREATE INDEX idx_agno_runs_workflow_id ON ai.agno_runs USING btree (workflow_id);


--
-- Name: idx_agno_schema_versions_created_at; Type: INDEX; Schema: ai; Owner: -
--

CREATE INDEX idx_agno_schema_versions_created_at ON ai.agno_schema_versions USING btree (created_at);


--
-- Name: idx_agno_sessions_created_at; Type: INDEX; Schema: ai; Owner: -
--

CREATE INDEX idx_agno_sessions_created_at ON ai.agno_sessions USING btree (created_at);


--
-- Name: idx_agno_sessions_session_type; Type: INDEX; Schema: ai; Owner: -
--

CREATE INDEX idx_agno_sessions_session_type ON ai.agno_sessions USING btree (session_type);


--
-- Name: agno_runs agno_runs_session_id_fkey; Type: FK CONSTRAINT; Schema: ai; Owner: -
--

ALTER TABLE ONLY ai.agno_runs
    ADD CONSTRAINT agno_runs_session_id_fkey FOREIGN KEY (session_id) REFERENCES ai.agno_sessions(session_id) ON DELETE CASCADE;


--
-- PostgreSQL database dump complete
--

\unrestrict zlDK8XJZSEg628XVhoe6W495W3RAXHuPQjfjSQ0cnzsuZEiXReWzfCZgtbbl5MO

