"""The bootstrap Pulumi program (``infra/bootstrap``): run once per project, before the first
deploy. ``__main__.py`` is the program; ``scripts.plan.evaluate_bootstrap`` (CLI:
``platform bootstrap-plan``) evaluates it offline."""
