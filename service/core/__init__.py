"""What every part of the service uses: settings (`settings`), errors and their HTTP answers
(`errors`), and the bounded JSON reader every input goes through (`bounded_json`)."""
