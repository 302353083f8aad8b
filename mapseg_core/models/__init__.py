"""U-Net models, encoders, losses and metrics, and the model file format."""
