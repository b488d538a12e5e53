"""brainenc: cross-modal voxelwise encoding models for story and movie fMRI."""
__version__ = "0.1.0"
