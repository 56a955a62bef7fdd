"""The automation condition every derived asset carries: rerun exactly what changed.

`eager()` ignores code versions, so we compose our own: run when the asset is missing, when its own code
version changed, or when any upstream asset got a new data version since this asset last ran (or is about
to be rerun in the same tick) — and never while a run of it is in progress. Embedding assets report a
content-hash data version, so re-materialising an unchanged embedding table does not retrain anything below it.
"""
import dagster as dg

A = dg.AutomationCondition

# An upstream data-version change counts only until this asset is requested or updated again: the `embed`
# job updates tracks and embeddings in one run, and the embeddings must not be requested a second time.
UPSTREAM_CHANGED = A.any_deps_match(A.data_version_changed()).since(A.newly_requested() | A.newly_updated())

RERUN_WHEN_STALE = (
    A.missing()
    | A.code_version_changed()
    | UPSTREAM_CHANGED
    | A.any_deps_match(A.will_be_requested())
) & ~A.in_progress() & ~A.any_deps_missing()
