"""Checks for the exercises at the end of each chapter: ``exercises.chNN.check_exercise_k(answer)``.

A chapter run as a script (or a notebook opened next to it) imports them with ``from exercises import ch01``.
Each check recomputes the quantity independently (numpy, scipy, closed forms, brute force) and either prints
that the answer is right or raises :class:`~exercises._check.ExerciseError` saying what is wrong.
Reference solutions live in ``exercises/solutions/`` (read them after trying); the test suite runs every
solution through its check.
"""
