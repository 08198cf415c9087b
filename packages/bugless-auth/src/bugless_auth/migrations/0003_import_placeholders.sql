-- Placeholder accounts for the people of an imported tracker (issue 21;
-- number 0004 in the plan, numbered here after the files main has).
--
-- A placeholder has no credentials and no subject any sign-in flow maps
-- (its subject is `import:<source>:<key>`), so it can never sign in. An
-- admin may later merge it into a real account: `merged_into` names that
-- account, and look-ups by the placeholder's id answer with it. The Model's
-- history keeps the placeholder's id: merging rewrites nothing there.
ALTER TABLE users
    ADD COLUMN placeholder boolean NOT NULL DEFAULT false,
    ADD COLUMN merged_into text NOT NULL DEFAULT '';
