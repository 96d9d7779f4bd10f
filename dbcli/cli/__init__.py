"""The Typer command line: parses arguments, calls the library, renders. No database work here."""
