"""DALI graphs of pretextgen, imported as ``pretextgen.pipelines`` (installed from the top-level ``pipelines/`` folder)."""
