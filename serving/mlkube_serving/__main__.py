"""``python -m mlkube_serving``: the serving pod's entrypoint."""

from .server import main

if __name__ == "__main__":
    raise SystemExit(main())
