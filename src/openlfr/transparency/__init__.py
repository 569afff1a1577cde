"""Transparency: deployment reports, calibrated thresholds, base rates, demographic differentials,
video scenarios and test deployments with volunteers (see docs/transparency.md).

- ``rates``: the published figures (false alert rate, alert precision), base-rate arithmetic and
  its plain-language explanation (pure functions);
- ``calibrate``: the threshold for a target FPIR at a watchlist's size, from identity folders,
  with the expected TPIR and its confidence interval;
- ``differentials``: FNIR and FPIR per demographic group, bootstrap intervals, ratios;
- ``video``: a video scenario against a truth file (identity-level TPIR, false alerts);
- ``report``: a deployment's report from the governance records (console, HTML, PDF).
"""
