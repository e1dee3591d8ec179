-- Each user's language (en, fr; NULL: the browser's Accept-Language) and theme (light, dark; NULL:
-- the system's prefers-color-scheme), chosen in the navigation and remembered per user.
ALTER TABLE users
  ADD COLUMN language VARCHAR(8) NULL AFTER disabled,
  ADD COLUMN theme VARCHAR(8) NULL AFTER language;
