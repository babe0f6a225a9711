"""``python -m popef_dump``: the same command as the ``popef_dump`` console script."""

from .cli import main

if __name__ == "__main__":
    main()
