"""Writes for Pine Script access, one module per stage; callers import the modules, never this package.

Imports point one way, each module using only those to its left:
    client, audit, publish <- access <- scripts <- sync;  access <- session;  client, audit <- usernames
"""
