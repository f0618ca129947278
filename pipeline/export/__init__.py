"""Serving artifacts: `artifact.export_student` writes one, `loader.load_student_artifact` reads it
without model code, `parity` compares two scorers."""
