"""surrogates/models"""
