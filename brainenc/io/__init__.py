"""Reading and writing data: transcripts, dataset layouts, responses, feature stores."""
