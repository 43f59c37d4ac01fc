"""What the console shows and offers, computed from the services' answers: pure functions of
their inputs (the language catalogs, a task's deadlines and commands, a case's fields, an audit
trail's rows, the message for a refusal)."""
