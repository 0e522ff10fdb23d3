"""Carte des formations: campaigns, the diploma catalogue, establishments'
requests from draft to validation, reviewers' views and exports."""
