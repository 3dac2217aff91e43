"""Statistics of rankings and judgments.

- :mod:`textnorm.stats.metrics`: per-prompt ranking metrics (AUROC, AUPRC, AP@K, rank
  correlations), bootstrap intervals over prompts, paired tests, Holm's adjustment
- :mod:`textnorm.stats.agreement`: inter-rater agreement (Fleiss' kappa, Krippendorff's alpha)
- :mod:`textnorm.stats.humaneval`: pairwise human evaluations (win rates, Wilson intervals, sign
  tests, Bradley-Terry)
- :mod:`textnorm.stats.selection`: choosing TextNorm's temperature and lambda by cross-validation
"""
