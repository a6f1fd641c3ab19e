"""``python -m worker.cli``: the same as the ``startproc`` console script."""

from worker.cli import main

if __name__ == "__main__":
    main()
