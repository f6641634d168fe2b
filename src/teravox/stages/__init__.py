"""teravox.stages"""
