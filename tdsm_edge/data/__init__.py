"""Data: the embedded synthetic dataset (`synthact`), stick-figure rendering, feature folders, splits.

Kept light on purpose: import the submodules you need (e.g. `tdsm_edge.data.synthact`,
`tdsm_edge.data.render`); nothing heavy is imported here.
"""
