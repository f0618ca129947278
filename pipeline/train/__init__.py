"""Training tasks: teacher, logit dump, distillation, debiasing, evaluation."""
