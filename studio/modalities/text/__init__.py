"""The text data kind: a table whose inputs include free text (reviews, tickets, descriptions), alone or
beside numbers and categories, in; a category or a number out."""

SHOWN_CHARACTERS = 600
"""How much of a text the run page's mistakes list shows (the logged rows, and their coloured words)."""
