"""The package version: in every sample's JSON and every manifest (shards are byte-identical only
within one version)."""
__version__ = "0.9.0"
