"""surrogates/registry"""
