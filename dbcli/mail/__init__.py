"""Mail: reports sent to people by SMTP. The message is built whole before any connection (an HTML
body, its plain-text alternative, attachments), then sent in one SMTP transaction to every
recipient under the ``mail:`` settings, its failures mapped to one-line errors and exit codes."""
