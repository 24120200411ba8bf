"""``python -m app``: the same as the ``filestream`` command."""

if __name__ == "__main__":
    from app.cli import main

    main()
