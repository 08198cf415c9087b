# frozen_string_literal: true

# Load the shared data set into Redmine through its ActiveRecord models.
#
# Run with Redmine's rails runner (RAILS_ENV=production, DATABASE_URL set):
#
#   rails runner _redmine_load.rb DATASET_DIR KEY_FILE
#
# Creates what the data set needs instead of Redmine's default data (whose
# status and priority names would clash): one status per bugless status
# (the last seven closed), one tracker per issue type, priorities P4..P0 (a
# higher position is more urgent in Redmine), a Developer role, a public
# project "bench" with one issue category per component, the users as
# members, and an API user "bench" whose key is written to KEY_FILE once
# everything is in (so a failed load starts over from an empty database). Each
# issue is Issue#save!-d with its creation time, cc as watchers; each later
# entry goes through Issue#init_journal + save!, as the web UI does. Mail is
# off during the load. Commits every 500 issues.

require 'json'

dataset = ARGV.fetch(0)
key_file = ARGV.fetch(1)
meta = JSON.parse(File.read(File.join(dataset, 'meta.json')))

# One journal per later entry. A fresh Issue each time: Issue#init_journal
# keeps an existing @current_journal (||=), so reusing the object would fold
# every entry into the first journal.
def apply_changes(issue_id, changes, users, statuses)
  changes.each do |change|
    at = Time.at(change['at']).utc
    issue = Issue.find(issue_id)
    issue.init_journal(users[change['author']], change['comment'])
    issue.status = statuses[change['status']] unless change['status'].empty?
    issue.save!
    Journal.where(id: issue.current_journal.id).update_all(created_on: at)
    Issue.where(id: issue_id).update_all(updated_on: at)
  end
end

# Loaded before: add journals an earlier loader version did not write (idempotent).
if Issue.exists?
  ActionMailer::Base.perform_deliveries = false
  users = User.where(type: 'User').index_by(&:login)
  statuses = IssueStatus.all.index_by(&:name)
  added = 0
  File.foreach(File.join(dataset, 'issues.jsonl')) do |line|
    record = JSON.parse(line)
    next if record['changes'].empty?

    ids = Journal.where(journalized_type: 'Issue', journalized_id: record['id']).order(:id).ids
    ids.zip(record['changes']).each do |id, change|
      Journal.where(id: id).update_all(created_on: Time.at(change['at']).utc) if change
    end
    have = ids.size
    next if have >= record['changes'].size

    Issue.transaction do
      apply_changes(record['id'], record['changes'][have..], users, statuses)
    end
    added += record['changes'].size - have
  end
  puts "redmine: issues present; #{added} missing journals added"
  exit 0
end

ActionMailer::Base.perform_deliveries = false
Setting.rest_api_enabled = '1'
Setting.login_required = '0'
Setting.notified_events = []
Setting.per_page_options = '25,50,100'
Setting.search_results_per_page = '10'
started = Process.clock_gettime(Process::CLOCK_MONOTONIC)

statuses = {}
meta['statuses'].each_with_index do |name, i|
  statuses[name] = IssueStatus.create!(name: name, is_closed: i >= 3)
end
priorities = {}
meta['priorities'].each_with_index do |name, i|
  priorities[name] = IssuePriority.create!(name: name, position: meta['priorities'].size - i,
                                           active: true, is_default: name == 'P2')
end
trackers = {}
meta['types'].each do |name|
  trackers[name] = Tracker.create!(name: name, default_status: statuses['new'])
end
permissions = %i[view_issues add_issues edit_issues add_issue_notes view_issue_watchers
                 add_issue_watchers set_issues_private]
developer = Role.create!(name: 'Developer', assignable: true, permissions: permissions,
                         issues_visibility: 'all')
Role.anonymous.update!(permissions: %i[view_issues], issues_visibility: 'all')
Role.non_member.update!(permissions: %i[view_issues add_issues add_issue_notes],
                        issues_visibility: 'all')
# Every role may move an issue between any two statuses.
trackers.each_value do |tracker|
  statuses.each_value do |from|
    statuses.each_value do |to|
      next if from == to

      WorkflowTransition.create!(role: developer, tracker: tracker, old_status: from,
                                 new_status: to)
    end
  end
end

project = Project.new(name: 'Bench', identifier: 'bench', is_public: true)
project.enabled_module_names = %w[issue_tracking]
project.trackers = trackers.values
project.save!
categories = {}
meta['components'].each do |path|
  categories[path] = IssueCategory.create!(project: project, name: path)
end

users = {}
User.transaction do
  (meta['users'] + ['bench']).each do |login|
    user = User.new(firstname: login, lastname: 'Bench', mail: "#{login}@bench.invalid",
                    language: 'en')
    user.login = login
    user.status = User::STATUS_ACTIVE
    user.save!
    Member.create!(project: project, principal: user, roles: [developer])
    users[login] = user
  end
end
puts "redmine: setup in #{(Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).round} s"

File.open(File.join(dataset, 'issues.jsonl')) do |lines|
  lines.each_slice(500).with_index do |batch, b|
    Issue.transaction do
      batch.each do |line|
        record = JSON.parse(line)
        created = Time.at(record['created']).utc
        issue = Issue.new(project: project, tracker: trackers[record['type']],
                          author: users[record['reporter']], subject: record['title'],
                          description: record['description'],
                          priority: priorities[record['priority']],
                          category: categories[record['component']],
                          status: statuses[record['status']])
        issue.assigned_to = users[record['assignee']] unless record['assignee'].empty?
        issue.created_on = created
        issue.updated_on = created
        issue.watcher_user_ids = record['cc'].map { |u| users[u].id }
        issue.save!
        if issue.id != record['id']
          raise "redmine gave id #{issue.id} to issue #{record['id']}"
        end

        apply_changes(issue.id, record['changes'], users, statuses)
      end
    end
    done = (b + 1) * 500
    elapsed = (Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).round
    puts "redmine: #{done} issues, #{elapsed} s" if (done % 2000).zero?
    $stdout.flush
  end
end
File.write(key_file, users['bench'].api_key)
puts "redmine: loaded in #{(Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).round} s"
