"""`python -m pipeline.matrix`: the experiment matrix's command, kept at its published name
(the code is `pipeline.experiments.matrix`)."""

from pipeline.experiments.matrix import app

if __name__ == "__main__":
    app()
