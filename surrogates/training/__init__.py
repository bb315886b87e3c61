"""surrogates/training"""
