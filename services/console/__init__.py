"""The web console: officers', supervisors' and auditors' pages over the services' APIs."""
