"""teravox.recon.backends"""
