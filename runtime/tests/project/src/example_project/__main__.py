"""`python -m <package>` and the console script: the runtime's command line for this project."""

from .registry import project


def main() -> int:
    return project.main()


if __name__ == "__main__":
    raise SystemExit(main())
