"""Talking to Bitbucket Cloud and Data Center over HTTP (requests), with one error vocabulary."""
