"""Parameters: the typed set shared by CLI, parameter files, .tori import and Nextflow."""

from teravox.config.params import (
    FIELDS,
    SECTIONS,
    Params,
    add_arguments,
    from_args,
    from_mapping,
    load,
    load_file,
    parse_bytes,
)

__all__ = ["FIELDS", "SECTIONS", "Params", "add_arguments", "from_args", "from_mapping", "load",
           "load_file", "parse_bytes"]
