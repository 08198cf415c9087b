"""The built-in importers, one module per source tracker."""
