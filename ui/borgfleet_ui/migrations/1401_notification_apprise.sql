-- Chat notifications through Apprise URLs (notifications/deliver.py): the URLs carry the chat services'
-- tokens, so they are stored encrypted like the SMTP password (one per line before encryption) and
-- never returned. A delivery on this channel names no URL: its recipient is the word 'apprise'.
ALTER TABLE notification_settings ADD COLUMN apprise_urls TEXT NULL;
ALTER TABLE notification_deliveries MODIFY channel ENUM('email','webhook','ping','apprise') NOT NULL;
