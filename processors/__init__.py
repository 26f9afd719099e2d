"""Companion coffea processors (installed as ``coffea_hepfm.processors``)."""
