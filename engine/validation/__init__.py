"""The validation suite: profile, stress, degrade and memory, and the checklist `supreme
validate` runs over them. Each module returns plain, JSON-able results measured in that
invocation; the CLI renders them."""
