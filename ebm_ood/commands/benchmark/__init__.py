"""``ebm-ood benchmark``: every registered method × dataset × seed → metrics tables (Markdown + JSON)."""
