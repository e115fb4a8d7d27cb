"""Everything that turns model answers into benchmark numbers and reports.

Modules, in the order data flows through them:

- `parsing`: free-text answer -> label (or ``None`` = invalid) / label set (MER2024-OV); the
  release's own parse.
- `owner_lists`: the owners' `string_to_list`, the one reader of label lists written as text
  (MER2024-OV cells, MER-UniBench labels, list-shaped answers).
- `openset`: MER2024-OV as MERTools scores it (CSV files, per-clip synonym groupings).
- `metrics`: the field's exact metric definitions (docs/metrics.md) as plain dicts.
- `judge`: EMER scoring by an LLM judge over an OpenAI-compatible API, or an offline lexical
  judge that reports *differently named* metrics.
- `report`: predictions JSONL, metrics JSON, markdown summary, confusion-matrix PNG.
- `scoring`: `score_predictions` per dataset, and the score-only CLI
  (``python -m minigpt4.eval.scoring --score predictions.jsonl --dataset mer2023``).
- `kfold`: leak-free k-fold cross-validation (every fold starts from the same weights).
- MER-UniBench, as its owners score it (docs/metrics.md): `owner_lists` (their list-string
  rule), `emotion_wheel` (their wheel folder -> word clusters), `label_extraction` (answer ->
  label string through an LLM, or an offline lexicon), `unibench` (hit rate, OV P/R/F,
  sentiment F1, the table), `unibench_files` (their files and ours; ``--dataset unibench-*``),
  `unibench_run` (one run: extraction -> files -> scores -> ``unibench.md``).

Nothing here needs a model, a GPU or the network (except the optional LLM judge and
label-extraction LLM).
"""
