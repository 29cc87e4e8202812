"""datamodules"""
