"""Reference solutions: ``solutions.chNN.exercise_k()`` returns an answer that ``chNN.check_exercise_k`` accepts."""
