"""The ``filestream`` console script: Faust's umbrella command with the app loaded."""

from __future__ import annotations

from typing import NoReturn

__all__ = ["main"]


def main() -> NoReturn:
    from app import app

    app.main()
