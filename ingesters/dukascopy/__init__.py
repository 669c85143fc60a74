"""Dukascopy historical data: instrument table, .bi5 decoders, datafeed downloader, backfill driver."""
