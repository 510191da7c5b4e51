"""mmgen.pipelines."""
