"""Use what was trained: predict new images with a run's best trial, and export it for serving.

model.py finds the trial and loads its checkpoint, sources.py lists the images to predict, predict.py
predicts them in batches, export.py writes and checks serving artifacts, cli.py wires the commands.
"""
