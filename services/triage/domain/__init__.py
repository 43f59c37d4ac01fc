"""Triage's pure rules: functions of their inputs, no I/O but reading a rule set's file.

- `rules`: the validated rule set (weights, thresholds, term lists; `rules.toml` is the sample);
- `terms`: finding the rules' terms in text written in any of the four languages;
- `reports`: a case's reports as the rules read them (clear fields, unsealed texts);
- `age`: the age evidence about each survivor and the finding it gives;
- `signals`: labels, risks and age evidence from each report's fields and narratives;
- `urgency`: the factors' score and the priority it gives;
- `overrides`: a supervisor's override and how it holds against later evidence;
- `case`: a case's reports combined into one result, and what a partner may be shown of it;
- `reclassification`: the change event when a case's classification or priority moved;
- `lanes`: which topic a result goes to;
- `replay`: a candidate rule set compared with the baseline on the same reports;
- `rebuild`: a case's state folded back from the topics, and an input's events settled with
  those of them already published.
"""
