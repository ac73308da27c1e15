"""The stages of a staged search, in the order ``hpo=all`` runs them (no imports: the CLI
names them in its help without loading pydantic and Optuna)."""
STAGE_ORDER = ("sanity", "coarse", "fine", "refit")
