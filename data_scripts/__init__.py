"""Scripts that download, verify and prepare the papers' datasets; see README.md and prepare.py."""
