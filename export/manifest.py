"""Re-export of `tdsm_edge.runtime.manifest` (reading and checking a bundle is runtime code: numpy + json).

Kept so that `from export.manifest import ...` keeps working; new code imports from the runtime.
"""
from tdsm_edge.runtime.manifest import (DEFAULT_REBUILD, FORMAT, MANIFEST, SCHEMA_VERSION, TABLES_FILE,
                                        Manifest, bundle_error, check_files_sha256, check_plan_compat, load_manifest,
                                        load_tables)

__all__ = ["DEFAULT_REBUILD", "FORMAT", "MANIFEST", "SCHEMA_VERSION", "TABLES_FILE", "Manifest",
           "bundle_error", "check_files_sha256", "check_plan_compat", "load_manifest", "load_tables"]
