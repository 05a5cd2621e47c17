"""Call recordings: rtpengine's pcap files mixed into the audio files the API serves."""
