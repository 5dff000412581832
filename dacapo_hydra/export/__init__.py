"""Export: a trained network as a program, a bioimage.io package, a standalone apply script."""
