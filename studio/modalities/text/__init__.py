"""The text data kind: a table whose inputs include free text (reviews, tickets, descriptions), alone or
beside numbers and categories, in; a category or a number out."""
